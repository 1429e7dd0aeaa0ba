// Encodes TCF and GPP test cases with the IAB Tech Lab's own libraries (@iabtechlabtcf/core and
// @iabgpp/cmpapi), decodes each string back with the same libraries, and prints one JSON line per
// case: {case, kind, string, expected}. The domain crate's tests/iab_strings.rs checks that
// Tactful's decoder reads every field the way these libraries do.
'use strict';
const { TCModel, TCString, GVL, PurposeRestriction, RestrictionType, Segment } = require('@iabtechlabtcf/core');
const { GppModel } = require('@iabgpp/cmpapi');

// A small vendor list of our own: the encoder drops what a vendor does not declare.
function vendor(id, purposes, legIntPurposes, flexiblePurposes) {
  return {
    id, name: `Vendor ${id}`, purposes, legIntPurposes, flexiblePurposes,
    specialPurposes: [], features: [], specialFeatures: [1, 2], policyUrl: 'https://example.com',
    cookieMaxAgeSeconds: 0, usesCookies: false, cookieRefresh: false, usesNonCookieAccess: false,
  };
}
const purposes = {};
for (let id = 1; id <= 11; id++) purposes[id] = { id, name: `Purpose ${id}`, description: '', illustrations: [] };
const vendors = {};
for (const id of [2, 6, 8, 10, 12, 14, 755]) vendors[id] = vendor(id, [1, 2, 3, 4, 7], [2, 7, 8, 9, 10], [2, 7]);
for (const id of [3000, 3001, 3002, 3003, 3004, 3005, 3300, 3301, 4000]) vendors[id] = vendor(id, [1, 2, 3], [2, 7], [2, 7]);
const gvl = new GVL({
  gvlSpecificationVersion: 3, vendorListVersion: 142, tcfPolicyVersion: 5,
  lastUpdated: '2026-11-05T16:00:00Z', purposes, specialPurposes: {}, features: {},
  specialFeatures: { 1: { id: 1, name: 'Geolocation', description: '' }, 2: { id: 2, name: 'Device scan', description: '' } },
  stacks: {}, dataCategories: {}, vendors,
});

function model(configure) {
  const tc = new TCModel(gvl);
  tc.cmpId = 31;
  tc.cmpVersion = 640;
  tc.consentScreen = 2;
  tc.publisherCountryCode = 'FR';
  tc.created = new Date(Date.UTC(2026, 10, 2));
  tc.lastUpdated = new Date(Date.UTC(2026, 10, 30));
  configure(tc);
  return tc;
}

const ids = (vector) => { const out = []; vector.forEach((has, id) => { if (has) out.push(id); }); return out; };

// What the IAB's decoder reads from a TC string, in the decoder's field names.
function tcExpected(string) {
  const tc = TCString.decode(string);
  const restrictions = [];
  tc.publisherRestrictions.getRestrictions().forEach((restriction) => {
    const vendors = tc.publisherRestrictions.getVendors(restriction).sort((a, b) => a - b);
    restrictions.push({ purpose: restriction.purposeId, kind: restriction.restrictionType, vendors });
  });
  restrictions.sort((a, b) => a.purpose - b.purpose || a.kind - b.kind);
  const segments = string.split('.').length;
  return {
    version: tc.version, created: tc.created.getTime(), last_updated: tc.lastUpdated.getTime(),
    cmp_id: tc.cmpId, cmp_version: tc.cmpVersion, consent_screen: tc.consentScreen,
    consent_language: tc.consentLanguage, vendor_list_version: tc.vendorListVersion,
    policy_version: tc.policyVersion, is_service_specific: tc.isServiceSpecific,
    use_non_standard_texts: tc.useNonStandardTexts,
    special_feature_opt_ins: ids(tc.specialFeatureOptins), purpose_consents: ids(tc.purposeConsents),
    purpose_legitimate_interests: ids(tc.purposeLegitimateInterests),
    purpose_one_treatment: tc.purposeOneTreatment, publisher_country_code: tc.publisherCountryCode,
    vendor_consents: ids(tc.vendorConsents), vendor_legitimate_interests: ids(tc.vendorLegitimateInterests),
    publisher_restrictions: restrictions,
    disclosed_vendors: tc.vendorsDisclosed.size ? ids(tc.vendorsDisclosed) : null,
    allowed_vendors: tc.vendorsAllowed.size ? ids(tc.vendorsAllowed) : null,
    publisher: segments > 1 && string.split('.').slice(1).some((s) => 'YZabcdef'.includes(s[0]))
      ? {
        consents: ids(tc.publisherConsents), legitimate_interests: ids(tc.publisherLegitimateInterests),
        custom_purposes: tc.numCustomPurposes, custom_consents: ids(tc.publisherCustomConsents),
        custom_legitimate_interests: ids(tc.publisherCustomLegitimateInterests),
      }
      : null,
  };
}

function restrict(tc, purpose, type, vendorIds) {
  const restriction = new PurposeRestriction(purpose, type);
  for (const id of vendorIds) tc.publisherRestrictions.add(id, restriction);
}

const tcCases = {
  // Few consecutive vendors: the encoder writes a bit field.
  bitfield_vendors: model((tc) => {
    tc.purposeConsents.set([1, 2, 3, 4]);
    tc.purposeLegitimateInterests.set([2, 7]);
    tc.specialFeatureOptins.set([1]);
    tc.vendorConsents.set([2, 6, 8, 755]);
    tc.vendorLegitimateInterests.set([2, 10]);
  }),
  // Long runs of high ids: the encoder writes ranges.
  range_vendors: model((tc) => {
    tc.purposeConsents.set([1, 2, 3]);
    tc.vendorConsents.set([3000, 3001, 3002, 3003, 3004, 3005, 4000]);
    tc.vendorLegitimateInterests.set([3300, 3301]);
  }),
  publisher_restrictions: model((tc) => {
    tc.purposeConsents.set([1, 2, 7]);
    tc.purposeLegitimateInterests.set([2, 7]);
    tc.vendorConsents.set([2, 6, 755]);
    tc.vendorLegitimateInterests.set([6, 755]);
    restrict(tc, 2, RestrictionType.REQUIRE_CONSENT, [2, 6]);
    restrict(tc, 7, RestrictionType.REQUIRE_LI, [755]);
    restrict(tc, 2, RestrictionType.NOT_ALLOWED, [3000, 3001, 3002]);
  }),
  publisher_purposes: model((tc) => {
    tc.purposeConsents.set([1]);
    tc.publisherConsents.set([1, 3, 4]);
    tc.publisherLegitimateInterests.set([2, 10]);
    tc.customPurposes = { 1: { id: 1, name: 'Newsletter' }, 2: { id: 2, name: 'Loyalty' }, 3: { id: 3, name: 'Events' } };
    tc.publisherCustomConsents.set([1, 3]);
    tc.publisherCustomLegitimateInterests.set([2]);
    tc.vendorConsents.set([755]);
  }),
  disclosed_vendors: model((tc) => {
    tc.purposeConsents.set([1, 2]);
    tc.vendorConsents.set([2]);
    tc.vendorsDisclosed.set([2, 6, 8, 755, 3000]);
  }),
};

const out = [];
for (const [name, tc] of Object.entries(tcCases)) {
  const segments = [Segment.CORE];
  if (name === 'publisher_purposes') segments.push(Segment.PUBLISHER_TC);
  if (name === 'disclosed_vendors') segments.push(Segment.VENDORS_DISCLOSED);
  const string = TCString.encode(tc, { segments });
  out.push({ case: name, kind: 'tcf', string, expected: tcExpected(string) });
}

// GPP strings: several sections at once, then each US section alone.
const usFields = [
  'Version', 'SharingNotice', 'SaleOptOutNotice', 'SharingOptOutNotice', 'TargetedAdvertisingOptOutNotice',
  'SensitiveDataProcessingOptOutNotice', 'SensitiveDataLimitUseNotice', 'SaleOptOut', 'SharingOptOut',
  'TargetedAdvertisingOptOut', 'SensitiveDataProcessing', 'KnownChildSensitiveDataConsents',
  'PersonalDataConsents', 'MspaCoveredTransaction', 'MspaOptOutOptionMode', 'MspaServiceProviderMode', 'Gpc',
];
function gppExpected(string) {
  const model = new GppModel(string);
  const sections = {};
  for (const name of model.getSectionIds().map((id) => require('@iabgpp/cmpapi').Sections.SECTION_ID_NAME_MAP.get(id))) {
    const section = {};
    if (name === 'tcfeuv2') {
      for (const field of ['CmpId', 'CmpVersion', 'PurposeConsents', 'VendorConsents', 'VendorLegitimateInterests', 'SpecialFeatureOptins']) {
        section[field] = model.getFieldValue(name, field);
      }
      section.Created = model.getFieldValue(name, 'Created').getTime();
      section.LastUpdated = model.getFieldValue(name, 'LastUpdated').getTime();
    } else {
      for (const field of usFields) {
        if (model.hasField(name, field)) section[field] = model.getFieldValue(name, field);
      }
      if (model.hasField(name, 'GpcSegmentIncluded') && !model.getFieldValue(name, 'GpcSegmentIncluded')) delete section.Gpc;
    }
    sections[name] = section;
  }
  return { section_ids: model.getSectionIds(), sections };
}

function gpp(configure) {
  const model = new GppModel();
  configure(model);
  return model.encode();
}
const gppCases = {
  tcf_usnat_usca: gpp((m) => {
    m.setFieldValue('tcfeuv2', 'CmpId', 31);
    m.setFieldValue('tcfeuv2', 'CmpVersion', 640);
    m.setFieldValue('tcfeuv2', 'PurposeConsents', [true, true, false, true, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false, false]);
    m.setFieldValue('tcfeuv2', 'VendorConsents', [2, 755, 3000, 3001, 3002]);
    m.setFieldValue('tcfeuv2', 'Created', new Date(Date.UTC(2026, 10, 2)));
    m.setFieldValue('tcfeuv2', 'LastUpdated', new Date(Date.UTC(2026, 10, 30)));
    m.setFieldValue('usnat', 'SaleOptOutNotice', 1);
    m.setFieldValue('usnat', 'SaleOptOut', 1);
    m.setFieldValue('usnat', 'SharingOptOut', 2);
    m.setFieldValue('usnat', 'TargetedAdvertisingOptOut', 1);
    m.setFieldValue('usnat', 'SensitiveDataProcessing', [0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    m.setFieldValue('usnat', 'Gpc', true);
    m.setFieldValue('usca', 'SaleOptOut', 2);
    m.setFieldValue('usca', 'SharingOptOut', 1);
    m.setFieldValue('usca', 'SensitiveDataProcessing', [1, 0, 0, 0, 0, 0, 0, 0, 2]);
  }),
  usva: gpp((m) => {
    m.setFieldValue('usva', 'SaleOptOut', 1);
    m.setFieldValue('usva', 'TargetedAdvertisingOptOut', 2);
    m.setFieldValue('usva', 'SensitiveDataProcessing', [0, 0, 1, 0, 0, 0, 0, 2]);
    m.setFieldValue('usva', 'KnownChildSensitiveDataConsents', 1);
  }),
  usco: gpp((m) => {
    m.setFieldValue('usco', 'TargetedAdvertisingOptOut', 1);
    m.setFieldValue('usco', 'SensitiveDataProcessing', [2, 0, 0, 0, 0, 0, 1]);
    m.setFieldValue('usco', 'Gpc', true);
  }),
  usct: gpp((m) => {
    m.setFieldValue('usct', 'SaleOptOut', 2);
    m.setFieldValue('usct', 'KnownChildSensitiveDataConsents', [1, 2, 1]);
  }),
  usut: gpp((m) => {
    m.setFieldValue('usut', 'SensitiveDataProcessingOptOutNotice', 1);
    m.setFieldValue('usut', 'TargetedAdvertisingOptOut', 1);
    m.setFieldValue('usut', 'MspaCoveredTransaction', 2);
  }),
};
for (const [name, string] of Object.entries(gppCases)) {
  out.push({ case: name, kind: 'gpp', string, expected: gppExpected(string) });
}
for (const line of out) console.log(JSON.stringify(line));
