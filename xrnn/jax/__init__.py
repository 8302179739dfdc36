"""xrnn on JAX arrays: the sequence functions as ``lax.scan`` with xrnn's backward as their
``jax.custom_vjp`` (:mod:`xrnn.jax.scan`)."""
