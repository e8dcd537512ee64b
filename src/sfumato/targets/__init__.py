"""What the protections aim at: target styles and their choice, the style renderers Ω(x, T) (Gatys,
latent WCT, img2img) and the concept anchors of the poison."""
