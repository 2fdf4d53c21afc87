"""The worker as a service: its faust app and runtime, settings, outputs, breakers (guard),
metrics, resources and health, web views, the broker watch, and the topics it creates."""
