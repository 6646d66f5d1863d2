"""Episodes shared by schemes: the tool-using agent loop and the simulated dialogue."""
