"""The CDK app of medfn: one stack holding the model bucket, one Lambda per discovered
function, the REST API with usage plans, and the scan pipeline. Nothing here lists
functions or models: they come from functions/*/function.toml and model_store/."""
