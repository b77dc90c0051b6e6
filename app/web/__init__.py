"""The web app's server side: the built single-page app at ``/``, its config route, offline API docs."""
