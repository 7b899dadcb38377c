"""genrt's training code (torch): one paper per file (gan, dcgan), the Improved-GAN blocks (improved), the shared
loop (loop), data (data), evaluation (evaluate) and the technique comparison (compare). Needs the `train` extra."""
