"""Where endpoints run: the local runtime keeps each instance as a model-server process."""
