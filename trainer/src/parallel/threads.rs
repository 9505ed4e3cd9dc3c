//! Torch's CPU intra-op thread count for the calling thread only.
//!
//! `tch::set_num_threads` is process-wide, and libtorch's also switches MKL's
//! dynamic threading off for good (GRPO after a data-parallel SFT ran ~13 %
//! slower). OpenMP's `nthreads-var` and MKL's local count are per thread, so
//! data-parallel workers set those and restore them.

use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::sync::OnceLock;

type SetCount = unsafe extern "C" fn(c_int);
type GetCount = unsafe extern "C" fn() -> c_int;
type SetLocal = unsafe extern "C" fn(c_int) -> c_int;

struct Api {
    omp_set_num_threads: SetCount,
    omp_get_max_threads: GetCount,
    /// MKL's C entry point takes the count by value and returns the previous
    /// local count; the lower-case `mkl_set_num_threads_local` symbol is the
    /// Fortran one and takes a pointer (calling it by value segfaults).
    mkl_set_num_threads_local: Option<SetLocal>,
}

fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(|| {
        let find = |name: &CStr| {
            // SAFETY: a lookup in the libraries already loaded (libtorch and
            // its OpenMP runtime are linked in).
            let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            (!p.is_null()).then_some(p)
        };
        let set = find(c"omp_set_num_threads")?;
        let get = find(c"omp_get_max_threads")?;
        let mkl = find(c"MKL_Set_Num_Threads_Local");
        // SAFETY: the C signatures of OpenMP 4.5 and MKL's service API.
        unsafe {
            Some(Api {
                omp_set_num_threads: std::mem::transmute::<*mut libc::c_void, SetCount>(set),
                omp_get_max_threads: std::mem::transmute::<*mut libc::c_void, GetCount>(get),
                mkl_set_num_threads_local: mkl
                    .map(|p| std::mem::transmute::<*mut libc::c_void, SetLocal>(p)),
            })
        }
    })
    .as_ref()
}

/// Whether this process's torch lets a thread set its own thread count.
pub fn per_thread_available() -> bool {
    api().is_some()
}

/// While alive, torch's CPU ops on this thread use `n` intra-op threads.
/// Not `Send`: it restores the thread it was made on.
pub struct ThreadCount {
    omp_before: c_int,
    mkl_before: Option<c_int>,
    _not_send: PhantomData<*const ()>,
}

impl ThreadCount {
    /// `None` where torch's runtime offers no per-thread control.
    pub fn set(n: usize) -> Option<Self> {
        let api = api()?;
        // libtorch sets a thread's OpenMP count on its first parallel op;
        // let that happen now so it does not undo ours later.
        let _ = tch::get_num_threads();
        let n = c_int::try_from(n.max(1)).unwrap_or(c_int::MAX);
        // SAFETY: plain setters of thread-local runtime state.
        unsafe {
            let omp_before = (api.omp_get_max_threads)();
            (api.omp_set_num_threads)(n);
            let mkl_before = api.mkl_set_num_threads_local.map(|f| f(n));
            Some(ThreadCount {
                omp_before,
                mkl_before,
                _not_send: PhantomData,
            })
        }
    }
}

impl Drop for ThreadCount {
    fn drop(&mut self) {
        if let Some(api) = api() {
            // SAFETY: as in `set`, on the same thread.
            unsafe {
                (api.omp_set_num_threads)(self.omp_before);
                if let (Some(f), Some(before)) = (api.mkl_set_num_threads_local, self.mkl_before) {
                    f(before);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_count_is_this_threads_alone_and_restored() {
        // Linux torch wheels bundle OpenMP (and MKL on x86-64).
        assert!(
            per_thread_available(),
            "no omp_set_num_threads in this process"
        );
        let before = tch::get_num_threads();
        {
            let _one = ThreadCount::set(1).unwrap();
            assert_eq!(tch::get_num_threads(), 1);
            // Another thread keeps the default.
            let other = std::thread::spawn(tch::get_num_threads).join().unwrap();
            assert_eq!(other, before.max(1));
        }
        assert_eq!(tch::get_num_threads(), before);
    }
}
