"""Domain services: plain functions over a database session, callable from views, jobs, tests."""
