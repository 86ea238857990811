# Read by the `flask` command (python-dotenv) from this directory and below, so `flask codex ...`
# needs no --app. Settings of the app itself go to .env (see .env.example), not here.
FLASK_APP=app
