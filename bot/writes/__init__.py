"""The only code that changes anything outside: commits on feature branches, (later) Jira
comments. Called only by the apply job, only for an approved proposal."""
