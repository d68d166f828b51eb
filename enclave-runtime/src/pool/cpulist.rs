//! Linux cpulist syntax (`"1,3-4"`): the format of `/sys/devices/system/cpu/online`,
//! `cpuset.cpus` and the `cpu_pool` key of `allocator.toml`. Parsed into a sorted set and
//! printed back in the compact range form.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Highest CPU number accepted (Linux `NR_CPUS` tops out at 8192).
pub const MAX_CPU_ID: u32 = 8191;

/// Errors parsing a cpulist.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CpuListError {
    /// A part is not a number or a `low-high` range.
    #[error(
        "Cannot parse {part:?} in cpulist {text:?}; write CPU numbers and ranges like \"1,3-4\""
    )]
    Syntax {
        /// The whole text.
        text: String,
        /// The offending part.
        part: String,
    },
    /// A range runs backwards.
    #[error("Range {low}-{high} in cpulist {text:?} runs backwards; write it as {high}-{low}")]
    Backwards {
        /// The whole text.
        text: String,
        /// First number of the range.
        low: u32,
        /// Second number of the range.
        high: u32,
    },
    /// A CPU number beyond what Linux supports.
    #[error("CPU {cpu} in cpulist {text:?} is above the Linux maximum of {max}")]
    TooLarge {
        /// The whole text.
        text: String,
        /// The offending number.
        cpu: u32,
        /// [`MAX_CPU_ID`].
        max: u32,
    },
}

/// A set of CPU numbers, printed and parsed in Linux cpulist syntax.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuList(BTreeSet<u32>);

impl CpuList {
    /// The empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `cpu` is in the list.
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    /// Adds `cpu`.
    pub fn insert(&mut self, cpu: u32) {
        self.0.insert(cpu);
    }

    /// Removes `cpu`.
    pub fn remove(&mut self, cpu: u32) {
        self.0.remove(&cpu);
    }

    /// Number of CPUs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// CPUs in ascending order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// CPUs in both lists.
    pub fn intersection(&self, other: &CpuList) -> CpuList {
        CpuList(self.0.intersection(&other.0).copied().collect())
    }

    /// CPUs in `self` but not in `other`.
    pub fn difference(&self, other: &CpuList) -> CpuList {
        CpuList(self.0.difference(&other.0).copied().collect())
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuList) -> bool {
        self.0.is_subset(&other.0)
    }
}

impl FromIterator<u32> for CpuList {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        CpuList(iter.into_iter().collect())
    }
}

impl FromStr for CpuList {
    type Err = CpuListError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut set = BTreeSet::new();
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(CpuList(set));
        }
        let num = |part: &str, s: &str| -> Result<u32, CpuListError> {
            let cpu: u32 = s.trim().parse().map_err(|_| CpuListError::Syntax {
                text: text.to_owned(),
                part: part.to_owned(),
            })?;
            if cpu > MAX_CPU_ID {
                return Err(CpuListError::TooLarge {
                    text: text.to_owned(),
                    cpu,
                    max: MAX_CPU_ID,
                });
            }
            Ok(cpu)
        };
        for part in trimmed.split(',') {
            match part.split_once('-') {
                Some((lo, hi)) => {
                    let (low, high) = (num(part, lo)?, num(part, hi)?);
                    if low > high {
                        return Err(CpuListError::Backwards {
                            text: text.to_owned(),
                            low,
                            high,
                        });
                    }
                    set.extend(low..=high);
                }
                None => {
                    set.insert(num(part, part)?);
                }
            }
        }
        Ok(CpuList(set))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut iter = self.0.iter().copied().peekable();
        while let Some(low) = iter.next() {
            let mut high = low;
            while iter.peek() == high.checked_add(1).as_ref() {
                high = iter.next().unwrap_or(high);
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if low == high {
                write!(f, "{low}")?;
            } else {
                write!(f, "{low}-{high}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for CpuList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CpuList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (text, printed) in [
            ("1,3-4", "1,3-4"),
            ("0-1\n", "0-1"),
            ("5,4,3", "3-5"),
            ("", ""),
        ] {
            let list: CpuList = text.parse().unwrap();
            assert_eq!(list.to_string(), printed);
        }
        assert_eq!("1,3-4".parse::<CpuList>().unwrap().len(), 3);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            "1,x".parse::<CpuList>(),
            Err(CpuListError::Syntax { .. })
        ));
        assert!(matches!(
            "4-2".parse::<CpuList>(),
            Err(CpuListError::Backwards { .. })
        ));
        assert!(matches!(
            "0-4294967295".parse::<CpuList>(),
            Err(CpuListError::TooLarge { .. })
        ));
        assert!(matches!(
            "1,,2".parse::<CpuList>(),
            Err(CpuListError::Syntax { .. })
        ));
    }
}
