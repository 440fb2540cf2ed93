#![no_main]
// libfuzzer-sys aborts on every panic, even one caught inside the code under test.
// `dsn::parse` contains mail-parser's debug assertions on corrupted MIME on purpose
// (see its comments), so only a panic that escapes it counts here.
libfuzzer_sys::fuzz_target!(
    |data: &[u8]| tayori_fuzz::escaping_panics_only(|| tayori_fuzz::dsn(data))
);
