"""One module per CLI command group; each handler takes the parsed arguments and returns an ExitCode."""
