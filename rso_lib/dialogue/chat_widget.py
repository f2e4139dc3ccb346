"""A chat you can click: :func:`rso_lib.dialogue.chat.chat` behind ipywidgets (notebook 08).

The dialogue runs in a background thread whose "user" waits on a queue; the Send / Accept / Quit
buttons put your words on it, so the kernel stays free to handle the widgets. The reply shows in
the conversation pane, and each turn's expert trace (strategy and probability, inferred preference,
retrieved movies, facts) beside it.

    from rso_lib.dialogue.chat_widget import ChatWidget
    ChatWidget(engine).show()
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence

from rso_lib.dialogue.chat import chat


class ChatWidget:
    """Text box + Send / Accept / Quit buttons, the conversation and the experts' trace side by side.

    Args:
        engine: a :class:`rso_lib.dialogue.engine.DialogueEngine` (``build_system(...)``).
        target_genres: what you are looking for (only marks whether a named movie covers it).
        timeout_s: how long the dialogue waits for your next message before it ends (default 1 h).
    """

    def __init__(self, engine, target_genres: Sequence[str] = (), timeout_s: float = 3600.0):
        import ipywidgets as W

        self.engine, self.target_genres, self.timeout_s = engine, list(target_genres), timeout_s
        self.inbox: queue.Queue[str] = queue.Queue()
        self.episode = None
        self.error: BaseException | None = None
        self.conversation = W.Output(layout={"width": "55%", "border": "1px solid #ccc", "min_height": "12em"})
        self.trace = W.Output(layout={"width": "45%", "border": "1px solid #ccc", "min_height": "12em"})
        self.text = W.Text(placeholder="Your message to the recommender", layout={"width": "60%"})
        self.send = W.Button(description="Send", button_style="primary")
        self.accept = W.Button(description="Accept the movie", button_style="success")
        self.quit = W.Button(description="Quit")
        self.send.on_click(lambda _: self._say(self.text.value))
        self.text.on_submit(lambda _: self._say(self.text.value))
        self.accept.on_click(lambda _: self._say("/accept"))
        self.quit.on_click(lambda _: self._say("/quit"))
        self.box = W.VBox(
            [W.HBox([self.conversation, self.trace]), W.HBox([self.text, self.send, self.accept, self.quit])]
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _say(self, text: str) -> None:
        text = (text or "").strip()
        if not text or not self.thread.is_alive():
            return
        self.conversation.append_stdout(f"you> {text}\n")
        self.text.value = ""
        self.inbox.put(text)

    def _input(self, prompt: str) -> str:
        try:
            return self.inbox.get(timeout=self.timeout_s)
        except queue.Empty:
            return "/quit"

    def _print(self, text: str) -> None:
        if text.startswith("  ["):  # the experts' trace of this turn
            self.trace.append_stdout(text.strip() + "\n")
        else:
            self.conversation.append_stdout(text + "\n")

    def _run(self) -> None:
        try:
            self.episode = chat(
                self.engine, input_fn=self._input, print_fn=self._print, target_genres=self.target_genres
            )
            self._print(f"(dialogue over: accepted={self.episode.accepted}, {len(self.episode.turns)} turns)")
        except BaseException as exc:  # shown in the pane, kept for the caller; never swallowed silently
            self.error = exc
            self._print(f"error: {type(exc).__name__}: {exc}")

    def show(self):
        """The widget (the last expression of a cell displays it)."""
        return self.box
