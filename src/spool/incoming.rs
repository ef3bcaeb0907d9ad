//! The durable write of an incoming message: the one way a message's bytes
//! become a spool file, for the SMTP listeners (which stream DATA into it)
//! and `graphgate send-test` (which writes its message at once).
//!
//! The bytes go to a new private `<uuid>.eml.part` (mode 0600, never an
//! existing file), then [`IncomingFile::commit`] flushes and fsyncs the
//! file, renames it to `<uuid>.eml` and fsyncs the directory so that the
//! rename survives a crash too. Only then does the spool record it and the
//! client hear 250: a `.part` file is never a promise.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// Where incoming message files are written: `<data dir>/spool/incoming`.
pub fn incoming_dir(data_dir: &Path) -> PathBuf {
    super::spool_dir(data_dir).join("incoming")
}

/// A message file being written; removed unless committed.
#[derive(Debug)]
pub struct IncomingFile {
    file: tokio::fs::File,
    part: PathBuf,
}

impl IncomingFile {
    /// A new private `.part` file in `dir` (created if missing).
    pub async fn create(dir: &Path) -> std::io::Result<IncomingFile> {
        tokio::fs::create_dir_all(dir).await?;
        let part = dir.join(format!("{}.eml.part", uuid::Uuid::new_v4().simple()));
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options.open(&part).await?;
        Ok(IncomingFile { file, part })
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes).await
    }

    /// Make it durable: flush, fsync, rename to its final name, fsync the
    /// directory. On an error the `.part` file is removed and nothing is
    /// durable.
    pub async fn commit(self) -> std::io::Result<PathBuf> {
        let IncomingFile { mut file, part } = self;
        let durable = async {
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            let path = part.with_extension("");
            tokio::fs::rename(&part, &path).await?;
            if let Some(dir) = path.parent() {
                // The rename itself must survive a crash.
                if let Ok(d) = tokio::fs::File::open(dir).await {
                    let _ = d.sync_all().await;
                }
            }
            Ok::<_, std::io::Error>(path)
        };
        match durable.await {
            Ok(path) => Ok(path),
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    /// Forget it: close and remove the `.part` file.
    pub async fn discard(self) {
        let IncomingFile { file, part } = self;
        drop(file);
        let _ = tokio::fs::remove_file(&part).await;
    }
}

/// Write `bytes` as one durable message file in `dir` (see
/// [`IncomingFile::commit`]); its path.
pub async fn write_durably(dir: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut file = IncomingFile::create(dir).await?;
    if let Err(e) = file.write_all(bytes).await {
        file.discard().await;
        return Err(e);
    }
    file.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_committed_file_is_private_and_complete_and_a_discarded_one_is_gone() {
        let data = tempfile::tempdir().unwrap();
        let dir = incoming_dir(data.path());
        let path = write_durably(&dir, b"Subject: x\r\n\r\nbody\r\n")
            .await
            .unwrap();
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("eml"));
        assert_eq!(std::fs::read(&path).unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut other = IncomingFile::create(&dir).await.unwrap();
        other.write_all(b"half").await.unwrap();
        other.discard().await;
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![path.file_name().unwrap().to_owned()]);
    }
}
