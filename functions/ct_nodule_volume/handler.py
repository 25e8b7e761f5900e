"""Lambda entry point of the ct_nodule_volume function (the model loads here, at init)."""

from medfn.lambda_handler import make_handler

handler = make_handler(__file__)
