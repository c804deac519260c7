"""Reports rendered for people: the terminal (rich) and Markdown (files, Slack uploads)."""
