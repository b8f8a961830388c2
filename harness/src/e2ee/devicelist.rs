//! The device list `<list xmlns='eu.siacs.conversations.axolotl'>` (SPEC.md §9.1, E2EE-2).

use super::{E2eeError, NS, clip, device_id_attr, expect_element, only_whitespace_text};
use crate::wire::Element;

/// An account's active devices, in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceList {
    pub devices: Vec<u32>,
}

impl DeviceList {
    /// Parses the `<list/>` payload of the device list node's item.
    pub fn from_element(el: &Element) -> Result<Self, E2eeError> {
        expect_element(el, "list", "E2EE-2")?;
        only_whitespace_text(el, "E2EE-2")?;
        let mut devices = Vec::new();
        for child in el.child_elements() {
            if !child.is("device", NS) {
                return Err(E2eeError::new(
                    "E2EE-2",
                    format!(
                        "unexpected <{} xmlns='{}'/> in <list/>",
                        clip(&child.name),
                        clip(&child.ns)
                    ),
                ));
            }
            let id = device_id_attr(child, "id", "E2EE-2")?;
            if devices.contains(&id) {
                return Err(E2eeError::new(
                    "E2EE-2",
                    format!("device {id} is listed twice"),
                ));
            }
            devices.push(id);
        }
        Ok(Self { devices })
    }

    /// The `<list/>` element.
    pub fn to_element(&self) -> Element {
        self.devices
            .iter()
            .fold(Element::new("list", NS), |list, id| {
                list.with_child(Element::new("device", NS).with_attr("id", id.to_string()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Limits, parse_fragment};

    fn parse(xml: &str) -> Result<DeviceList, String> {
        let el = parse_fragment(xml.as_bytes(), &Limits::harness_ceilings()).expect("well-formed");
        DeviceList::from_element(&el).map_err(|e| e.to_string())
    }

    #[test]
    fn round_trip() {
        let list = DeviceList {
            devices: vec![1, 2147483647, 42],
        };
        let xml = list.to_element().to_xml();
        assert_eq!(
            xml,
            "<list xmlns=\"eu.siacs.conversations.axolotl\"><device id=\"1\"/><device id=\"2147483647\"/><device id=\"42\"/></list>"
        );
        assert_eq!(parse(&xml), Ok(list));
        assert_eq!(
            parse("<list xmlns='eu.siacs.conversations.axolotl'/>"),
            Ok(DeviceList::default())
        );
    }

    #[test]
    fn pretty_printed() {
        assert_eq!(
            parse("<list xmlns='eu.siacs.conversations.axolotl'>\n  <device id='5'/>\n</list>"),
            Ok(DeviceList { devices: vec![5] })
        );
    }

    #[test]
    fn errors() {
        let cases = [
            (
                "<list xmlns='urn:other'/>",
                "E2EE-2: expected <list xmlns='eu.siacs.conversations.axolotl'/>, found <list xmlns='urn:other'/>",
            ),
            (
                "<list xmlns='eu.siacs.conversations.axolotl'><device/></list>",
                "E2EE-2: <device/> has no id attribute",
            ),
            (
                "<list xmlns='eu.siacs.conversations.axolotl'><device id='x'/></list>",
                "E2EE-2: id='x' on <device/> is not a decimal integer of at most 32 bits",
            ),
            (
                "<list xmlns='eu.siacs.conversations.axolotl'><device id='0'/></list>",
                "E2EE-1: id='0' on <device/> is outside the device id range 1..=2147483647",
            ),
            (
                "<list xmlns='eu.siacs.conversations.axolotl'><device id='2147483648'/></list>",
                "E2EE-1: id='2147483648' on <device/> is outside the device id range 1..=2147483647",
            ),
            (
                "<list xmlns='eu.siacs.conversations.axolotl'><device id='3'/><device id='3'/></list>",
                "E2EE-2: device 3 is listed twice",
            ),
            (
                "<list xmlns='eu.siacs.conversations.axolotl'><dev id='3'/></list>",
                "E2EE-2: unexpected <dev xmlns='eu.siacs.conversations.axolotl'/> in <list/>",
            ),
            (
                "<list xmlns='eu.siacs.conversations.axolotl'>3</list>",
                "E2EE-2: <list/> contains text '3'",
            ),
        ];
        for (xml, want) in cases {
            assert_eq!(parse(xml), Err(want.to_owned()), "{xml}");
        }
    }
}
