"""Routes for admin keys: what the whole service holds, storage per owner, live upload sessions, cancelling any job or upload."""
