"""The code that is fast on purpose, in one place (see README.md here): what each piece does, why,
what it relies on and which tests check it still holds.

- ``nearcache``: a per-process copy of hot Redis keys that Redis keeps exact (client tracking).
- ``publisher``: Celery task messages published through Celery's own message builder onto one
  reused producer.
"""
