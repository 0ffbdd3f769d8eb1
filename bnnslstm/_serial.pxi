# BLAS single-threaded while calls run, counted in C: the lock, the count of running calls
# and the thread-count functions of the BLAS the kernels call (OpenBLAS's own, whose
# addresses bnnslstm.lstm._SerialBlas finds through threadpoolctl). A call then pays a
# lock and, when it is the first to run, two function calls: nanoseconds, where ctypes
# calls cost microseconds. The policy (which libraries, fork) is lstm._SerialBlas's; this
# is its mechanism when every library's functions are known. Part of _plan.pyx.

from cpython.pythread cimport (PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_release_lock, PyThread_type_lock, WAIT_LOCK)

ctypedef int (*count_getter)() noexcept nogil
ctypedef void (*count_setter)(int) noexcept nogil

cdef enum:
    SERIAL_MAX = 8              # BLAS libraries limited at once, at most

cdef count_getter serial_get[SERIAL_MAX]
cdef count_setter serial_set[SERIAL_MAX]
cdef int serial_saved[SERIAL_MAX]
cdef int serial_libraries = -1  # -1: not handed over (lstm._SerialBlas limits in Python)
cdef int serial_users = 0       # calls running now
cdef PyThread_type_lock serial_lock = PyThread_allocate_lock()


def serial_blas_functions(pairs):
    """Hand over the (get, set) thread-count functions, as addresses, of every BLAS library
    the kernels call; from then on serial_enter/serial_exit limit them."""
    global serial_libraries
    cdef int k
    if len(pairs) > SERIAL_MAX:
        raise ValueError("serial_blas_functions: too many libraries")
    for k, (get, set_) in enumerate(pairs):
        serial_get[k] = <count_getter><size_t>get
        serial_set[k] = <count_setter><size_t>set_
    serial_libraries = len(pairs)


cdef void serial_enter() noexcept nogil:
    """One more call running: the first one saves each library's thread count and sets 1."""
    global serial_users
    cdef int k
    PyThread_acquire_lock(serial_lock, WAIT_LOCK)
    if serial_users == 0:
        for k in range(serial_libraries):
            serial_saved[k] = serial_get[k]()
            if serial_saved[k] != 1:
                serial_set[k](1)
    serial_users += 1
    PyThread_release_lock(serial_lock)


cdef void serial_exit() noexcept nogil:
    """One call fewer: the last one gives each library its thread count back."""
    global serial_users
    cdef int k
    PyThread_acquire_lock(serial_lock, WAIT_LOCK)
    serial_users -= 1
    if serial_users == 0:
        for k in range(serial_libraries):
            if serial_saved[k] != 1:
                serial_set[k](serial_saved[k])
    PyThread_release_lock(serial_lock)


def serial_blas(bint enter):
    """serial_enter() (True) or serial_exit() (False), for lstm._SerialBlas."""
    if enter:
        serial_enter()
    else:
        serial_exit()


def serial_blas_fork(int stage):
    """Around fork: 0 before (no fork halfway through a limit), 1 after, in the parent; 2
    after, in the child, which has only the forking thread: the calls other threads were
    making do not exist there, so their limit is lifted and the count starts at 0."""
    global serial_users, serial_lock
    cdef int k
    if stage == 0:
        PyThread_acquire_lock(serial_lock, WAIT_LOCK)
    elif stage == 1:
        PyThread_release_lock(serial_lock)
    else:
        serial_lock = PyThread_allocate_lock()
        if serial_users:
            for k in range(serial_libraries):
                if serial_saved[k] != 1:
                    serial_set[k](serial_saved[k])
        serial_users = 0
