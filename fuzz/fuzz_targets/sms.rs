#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tayori_fuzz::sms(data));
