"""The extraction role: audio in, wav2vec2 feature vectors out (model.py loads and runs the model,
app.py is the role's faust app, settings.py its settings). Nothing here is imported by a
pattern-memory worker, so it never loads torch."""
