"""The three Double-MNIST classifiers: one architecture, three training recipes."""
