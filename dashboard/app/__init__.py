"""The clinician's web application: ``create_app`` (Starlette), served by ``neurospasm dashboard``."""
