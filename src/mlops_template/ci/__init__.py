"""CI/CD helpers: GitHub client, reports, test summary, smoke test, template rename, alert relay."""
