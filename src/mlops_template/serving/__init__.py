"""The prediction service: settings from the environment, request contract from the bundle, predictor, app."""
