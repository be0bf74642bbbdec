"""The verification problem: network, image, layers, box and the top-k margin."""
