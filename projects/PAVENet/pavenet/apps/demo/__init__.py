"""The video demo behind tools/demo.py: frame sources (`frames`), track-coloured overlays
(`visualization`), atomic video/image outputs (`outputs`) and the runner (`runner`) that drives the
streaming predictor and tracker of `pavenet.inference`."""
