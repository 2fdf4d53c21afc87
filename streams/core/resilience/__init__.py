"""What keeps the worker up and tells the truth about it, as pure state machines and arithmetic.

- breaker.py: a circuit breaker per operation, modelled on resilience4j's;
- limits.py: how many patterns a space must shed, from its size, memory estimate and event clock;
- health.py: a worker's health from its resource samples, with hysteresis;
- outage.py: the broker's reachability over time, for /health and for quiet logs.
"""
