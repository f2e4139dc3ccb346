"""PLM baselines of the paper's Tables IV-V, trained here and run through the same dialogue engine
as every other system.

* :mod:`~rso_lib.baselines.kg`: knowledge graphs (ReDial KG files; INSPIRED: built from the KB's
  facts) and the entity linker;
* :mod:`~rso_lib.baselines.examples`: training examples from recommender turns (``<movie>`` slots);
* :mod:`~rso_lib.baselines.unicrs`: UniCRS (frozen PLM + R-GCN + fused soft prompts);
* :mod:`~rso_lib.baselines.barcor`: BARCOR (one BART for ranking and replies, light KG);
* :mod:`~rso_lib.baselines.registry`: the one ``kind`` -> model registry (``make_model``, ``load_plm``);
* :mod:`~rso_lib.baselines.train`: staged, checkpointed, exactly resumable training;
* :mod:`~rso_lib.baselines.pipeline`: one (system, dataset) run as the chain does it;
* :mod:`~rso_lib.baselines.plm_system`: ranker (``retrieve``) + generator (``reply``) for the engine,
  what ``build_system("UNICRS" | "BARCOR", plm=...)`` installs;
"""
