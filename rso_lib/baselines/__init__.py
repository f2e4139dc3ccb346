"""PLM baselines of the paper's Tables IV-V: UniCRS and BARCOR, trained here and run through the
same dialogue engine as every other system (:mod:`rso_lib.baselines.engine`)."""
