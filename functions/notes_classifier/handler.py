"""Lambda entry point of the notes_classifier function (the model loads here, at init)."""

from medfn.lambda_handler import make_handler

handler = make_handler(__file__)
