"""The optimisation stage: the one loop every protection and baseline runs (:mod:`~sfumato.optimise.loop`),
its latent-target objectives, budget terms, calibration on the saved file, EOT transforms, adaptive
masking, and the shared perturb-then-calibrate machinery (:mod:`~sfumato.optimise.perturb`)."""
