"""Teacher-student schemes: one package each, exporting one ``SCHEME`` record (see ``base.py``).

``agents/jobs.py`` lists them; the command line, the report and the export read the records.
"""
