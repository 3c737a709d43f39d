//! The FastCDC chunker on arbitrary bytes and sizes: cuts cover the input in
//! order, every chunk is at most `max` bytes and all but the last at least
//! `min` bytes, and streaming in two windows gives the same cuts.
//!
//! Input: `seed [32] || min u16 LE || avg_shift u8 || max u16 LE || split u16 LE || data`;
//! the sizes are mapped into valid FastCDC bounds (avg 256 B ..= 32 KiB).
#![no_main]
use libfuzzer_sys::fuzz_target;
use snap::write::chunker::Chunker;
use snap::format::config::ChunkSizes;

fuzz_target!(|input: &[u8]| {
    if input.len() < 39 {
        return;
    }
    let seed: [u8; 32] = input[..32].try_into().unwrap();
    let r_min = u16::from_le_bytes([input[32], input[33]]) as u32;
    let avg = 1u32 << (8 + input[34] % 8);
    let r_max = u16::from_le_bytes([input[35], input[36]]) as u32;
    let split = u16::from_le_bytes([input[37], input[38]]) as usize;
    let data = &input[39..];
    let min = (64 + r_min % (avg - 64)) & !1;
    let max = (avg + 2 + r_max % (avg * 8)) & !1;
    let sizes = ChunkSizes { min, avg, max };
    if sizes.validate().is_err() {
        return;
    }
    let c = Chunker::new(&seed, sizes);
    let mut cuts = Vec::new();
    assert_eq!(c.cuts(data, true, &mut cuts), data.len());
    let mut pos = 0;
    for (i, &(off, len)) in cuts.iter().enumerate() {
        assert_eq!(off, pos);
        assert!(len >= 1 && len <= max as usize);
        if i + 1 < cuts.len() {
            assert!(len >= min as usize);
        }
        pos += len;
    }
    assert_eq!(pos, data.len());
    // Streaming: a first window that is not at EOF, then the rest.
    let split = split.min(data.len());
    let mut s = Vec::new();
    let used = c.cuts(&data[..split], false, &mut s);
    assert!(used <= split);
    let mut rest = Vec::new();
    c.cuts(&data[used..], true, &mut rest);
    s.extend(rest.into_iter().map(|(o, l)| (o + used, l)));
    assert_eq!(cuts, s);
});
