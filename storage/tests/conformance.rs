//! openraft's storage conformance suite against the sled log store and the snapshot-file
//! state machine, each test on a fresh temporary data dir.

use gavel_storage::{LogStore, LogStoreOptions, StateMachineStore, StorageError, TypeConfig};
use openraft::testing::log::{StoreBuilder, Suite};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(dir.path().join("sled"), LogStoreOptions::default()).expect("open log store");
        let sm = StateMachineStore::open(dir.path().join("snapshots"), dir.path().join("archive"))
            .expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime
        .block_on(Suite::test_all(Builder))
        .expect("openraft storage suite");
}
