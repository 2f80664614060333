"""bnorm: the Keras / TensorFlow BatchNormalization layer, in C, for numpy.

    import bnorm
    bn = bnorm.BatchNormalization(momentum=0.9)   # tf_keras' arguments
    y = bn(x, training=True)
    dx, dgamma, dbeta = bn.backward(dy)

bnorm.BatchNormalization follows tf_keras.layers.BatchNormalization (2.21);
bnorm.compat.v1.BatchNormalization follows tf.compat.v1.layers.

Dtypes: as in tf_keras. dtype='float32' (the default) or 'float64' is the
layer's dtype: variables and math in it, inputs of any float dtype cast to
it. dtype='float16' or 'mixed_float16' gives Keras' mixed-precision rule:
the input is cast to float16, the math runs in float32 and the output is
cast back to float16; variables stay float32. The compat.v1 layer takes the
dtype of its first input.

Threads and instruction sets: set_num_threads(n) (results are bit-identical
for any count), set_small_calls("choose" | "share") (whether calls on small
tensors run on the faster of one thread and all, or always on all),
set_max_isa("scalar" | "avx2" | "avx512"), get_isa().

Not supported (clear errors): synchronized=True, mask, activity_regularizer.
"""
from . import _lib
from .errors import (BnormError, CallbackError, CorruptError,  # noqa: F401
                     InvalidArgumentError, InvalidConfigError, NotFoundError,
                     ShapeError, StateError, UnsupportedError)
from .layer import BatchNormalization, Variable, clear_session  # noqa: F401
from .runtime import (get_isa, get_num_threads, get_small_calls,  # noqa: F401
                      set_max_isa, set_num_threads, set_small_calls)
from . import objects  # noqa: F401
from . import compat  # noqa: F401
from . import objects as initializers  # noqa: F401
from . import objects as regularizers  # noqa: F401
from . import objects as constraints  # noqa: F401

__version__ = "0.1.0"
library_path = _lib.lib.path
