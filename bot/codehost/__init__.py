"""The code host (GitHub today): the port (`port.py`), one adapter per host (`github.py`), the
registry that picks one for a repository (`registry.py`), and what a pull request's analysis
needs locally (`pulls.py`). Only an adapter reads a host's credentials."""
