"""Where events come from: spool files and their streams, tailing, directory watching, ext-state sidecars, replay order. Sources import only `model` and `state`."""
