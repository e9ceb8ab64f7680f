"""The owner's dashboard: forms, submissions, admin. Every view needs a signed-in user and
loads what it shows through services.permissions."""
