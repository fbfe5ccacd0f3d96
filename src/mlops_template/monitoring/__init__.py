"""Post-production: reference profile, drift statistics, live window, feedback, experiments, security."""
