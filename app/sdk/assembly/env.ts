// The host functions of the module ABI. AssemblyScript imports a file's bodiless `declare`d
// functions from a module named after the file: these come from "env", as the ABI says.

/** edge_log(level, ptr, len) -> 0 or a negative error code. */
export declare function edge_log(level: i32, ptr: usize, len: i32): i32;

/** get_sensor(path_ptr, path_len, out_ptr, out_cap) -> bytes written or a negative error code. */
export declare function get_sensor(pathPtr: usize, pathLen: i32, outPtr: usize, outCap: i32): i32;

/** post_uplink(ptr, len) -> 0 when accepted for sending, or a negative error code. */
export declare function post_uplink(ptr: usize, len: i32): i32;
