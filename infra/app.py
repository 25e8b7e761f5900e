"""The CDK app's entry (`cdk.json`): `medfn synth` and `medfn deploy` call the same builder.

Run from this folder with the repository's virtual environment active, after `medfn package`
has built each function's zip (`medfn synth` does both).
"""

from medfn_infra.app import build_app

build_app().synth()
