"""The clinician's dashboard: a reader of MQTT (live) and of the store (history).

``dashboard.history`` is the one query interface over the stored data (SQLite locally, InfluxDB in
a clinic); ``dashboard.reviews`` keeps clinicians' verdicts and interventions; ``dashboard.analysis``
turns rows into trends and notices; ``dashboard.report`` prints them. ``dashboard.app`` is the web
application on top.
"""
