//! Ground truth about files: what each simulated file contains, derived from its
//! number and the schedule's seed, so that any copy can be checked byte for byte.

use bytes::Bytes;
use torronto_core::layout::{chunk_range, ChunkIndex};
use torronto_core::{FileName, Manifest, ManifestBuilder};

use crate::rng::mix;

/// One file the schedule may insert: its name, bytes and manifest.
#[derive(Clone, Debug)]
pub struct FileSpec {
    pub name: FileName,
    pub data: Bytes,
    pub manifest: Manifest,
}

impl FileSpec {
    pub fn new(number: u32, size: u64, schedule_seed: u64) -> Self {
        let name = FileName::new(&format!("f{number}")).expect("plain names are valid");
        let seed = mix(schedule_seed ^ (u64::from(number) << 32));
        let mut data = Vec::with_capacity(size as usize + 8);
        let mut word = 0u64;
        while (data.len() as u64) < size {
            data.extend_from_slice(&mix(seed ^ word).to_le_bytes());
            word += 1;
        }
        data.truncate(size as usize);
        let mut builder = ManifestBuilder::new();
        builder.update(&data);
        let manifest = builder.finish().expect("simulated files are small");
        FileSpec { name, data: Bytes::from(data), manifest }
    }

    /// Where a user keeps it before inserting it.
    pub fn path(&self) -> String {
        format!("/home/user/{}", self.name)
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    pub fn chunk(&self, index: ChunkIndex) -> Bytes {
        let r = chunk_range(self.size(), index);
        self.data.slice(r.start as usize..r.end as usize)
    }
}
