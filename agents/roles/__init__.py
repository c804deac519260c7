"""One module per agent. Each agent reads the shared pipeline state and adds to it."""
