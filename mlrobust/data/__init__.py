"""Double-MNIST: two real MNIST digits per 64x64 canvas, with a pixel mask per digit."""
