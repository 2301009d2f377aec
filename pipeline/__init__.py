"""ofsys-pipeline: feeds Ofsys Journey from a shop's DigitalDataManager events on Kafka.

Data flow, one module each: consume -> decode -> normalise -> dedupe -> batch -> deliver
-> commit; `app` runs the loop that ties them together.
"""

__version__ = "0.1.0"
