"""What the tests share: builders of real git repositories, fakes of the network edge
(Slack, Anthropic, Jira on 127.0.0.1), the real services, and other processes."""
