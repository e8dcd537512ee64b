"""The three protections: the style cloak (:mod:`~sfumato.protections.cloak`, Glaze), the concept poison
(:mod:`~sfumato.protections.poison`, Nightshade) and both jointly under one budget
(:mod:`~sfumato.protections.protect`). Their configurations and presets live in :mod:`sfumato.config`."""
