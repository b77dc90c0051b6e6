"""Routes for admin keys: what the whole service holds, live upload sessions, cancelling any job."""
