"""The core every cell and backend shares: input validation (:mod:`~xrnn.core.inputs`,
:mod:`~xrnn.core.params`), the time-major layout (:mod:`~xrnn.core.layout`), the backend
interface (:mod:`~xrnn.core.ops`), the one forward and one backward loop with their step caches
(:mod:`~xrnn.core.engine`) and every tuning threshold (:mod:`~xrnn.core.tuning`)."""
