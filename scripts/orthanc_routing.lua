-- Orthanc: send every image a modality stores on to the boneage DICOM node (declared as the
-- modality BONEAGE), and keep what the node sends back (its calling AE title, BONEAGE) where it
-- lands. Load it with "LuaScripts": ["/path/to/orthanc_routing.lua"] in Orthanc's configuration.
function OnStoredInstance(instanceId, tags, metadata, origin)
  if origin['RequestOrigin'] == 'DicomProtocol' and origin['RemoteAet'] ~= 'BONEAGE' then
    SendToModality(instanceId, 'BONEAGE')
  end
end
