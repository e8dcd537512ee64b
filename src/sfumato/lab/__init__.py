"""The mimicry lab: train a small class-conditional latent generator on (protected) images and judge what
it learned (issue 17). Heavy pieces (torch, judges) are imported lazily by the submodules."""
